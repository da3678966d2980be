"""The job handler against the stand-in app: in-process (ASGI) and over real loopback sockets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.serverless.answers import serialized_size
from backend.serverless.handler import JobHandler
from backend.serverless.launcher import ServerThread
from tests.support.audio import wav_bytes
from tests.support.serverless import Canary, b64, big_bytes, make_test_app, settings_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture()
def app() -> Any:
    return make_test_app()


@pytest.fixture()
def run_jobs(tmp_path: Path, app: Any) -> Callable[..., list[dict]]:
    """Run jobs through a JobHandler over httpx.ASGITransport (no sockets)."""

    def go(*inputs: Any, **overrides: Any) -> list[dict]:
        settings = settings_for(tmp_path, **overrides)

        async def main() -> list[dict]:
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
            handler = JobHandler(settings, base_url="http://127.0.0.1:1", client=client)
            try:
                return [await handler({"id": f"job-{i}", "input": x}) for i, x in enumerate(inputs)]
            finally:
                await client.aclose()

        return asyncio.run(main())

    go.settings = lambda: settings_for(tmp_path)  # type: ignore[attr-defined]
    return go


def test_json_get_and_post(run_jobs: Callable[..., list[dict]]) -> None:
    health, echo = run_jobs(
        {"method": "GET", "path": "/health"},
        {
            "path": "/echo?a=1",
            "body": {"name": "x"},
            "params": {"b": [1, 2], "c": True},
            "headers": {"X-Custom": "v", "Host": "evil.example", "Content-Length": "1"},
        },
    )
    assert health == {
        "status_code": 200,
        "headers": {"content-type": "application/json"},
        "body": {"status": "healthy", "stub": True},
    }
    body = echo["body"]
    assert body["method"] == "POST" and body["json"] == {"name": "x"}
    assert body["query"] == [["a", "1"], ["b", "1"], ["b", "2"], ["c", "true"]]
    assert body["headers"]["x-custom"] == "v"
    assert body["headers"]["host"] == "127.0.0.1:1"  # the job's Host header never reaches the app
    assert body["headers"]["x-request-id"] == "job-1"


def test_multipart_upload_with_form_fields(run_jobs: Callable[..., list[dict]]) -> None:
    wav = wav_bytes(0.2)
    (answer,) = run_jobs(
        {
            "path": "/upload",
            "files": {
                "file": {
                    "filename": "s.wav",
                    "content_base64": b64(wav),
                    "content_type": "audio/wav",
                },
                "more": [{"content_base64": b64(b"a")}, {"content_base64": b64(b"bb")}],
            },
            "form": {"reference_text": "hello there", "n": 3, "flag": False},
        }
    )
    assert answer["status_code"] == 200
    files = answer["body"]["files"]
    assert files[0] == {
        "field": "file",
        "filename": "s.wav",
        "content_type": "audio/wav",
        "size": len(wav),
        "sha256": hashlib.sha256(wav).hexdigest(),
    }
    assert [f["size"] for f in files[1:]] == [1, 2]
    assert answer["body"]["fields"] == [
        ["reference_text", "hello there"],
        ["n", "3"],
        ["flag", "false"],
    ]


def test_form_without_files(run_jobs: Callable[..., list[dict]]) -> None:
    (answer,) = run_jobs({"path": "/form", "form": {"a": "1", "b": ["x", "y"]}})
    assert answer["body"]["fields"] == [["a", "1"], ["b", "x"], ["b", "y"]]
    # multipart, not URL-encoded: the app's import routes (volume_name) parse multipart only
    assert answer["body"]["content_type"].startswith("multipart/form-data")


def test_binary_text_and_errors(run_jobs: Callable[..., list[dict]]) -> None:
    audio, zipped, text, missing, teapot, bad = run_jobs(
        {"method": "GET", "path": "/audio/g1"},
        {"method": "GET", "path": "/zip"},
        {"method": "GET", "path": "/text"},
        {"method": "GET", "path": "/audio/missing"},
        {"method": "GET", "path": "/status/503"},
        {"path": "/generate", "body": {"text": ""}},
    )
    assert audio["is_binary"] is True and audio["content_type"] == "audio/wav"
    assert base64.b64decode(audio["body_base64"]) == wav_bytes(0.1)
    assert zipped["is_binary"] is True and zipped["content_type"] == "application/zip"
    assert text["body"] == "plain words" and text["headers"] == {
        "content-type": "text/plain; charset=utf-8",
        "retry-after": "3",
    }
    # App errors are answers with their status, not job failures.
    assert missing == {
        "status_code": 404,
        "headers": {"content-type": "application/json"},
        "body": {"detail": "no such generation"},
    }
    assert teapot["status_code"] == 503 and "error" not in teapot
    assert bad["status_code"] == 422


def test_redirects_are_not_followed(run_jobs: Callable[..., list[dict]]) -> None:
    (answer,) = run_jobs({"method": "GET", "path": "/redirect"})
    assert answer["status_code"] == 307
    assert answer["headers"]["location"] == "http://example.invalid/x"


def test_generate_waits_for_durable_audio(run_jobs: Callable[..., list[dict]]) -> None:
    plain, forced = run_jobs(
        {"path": "/generate", "body": {"text": "hi"}},
        {"path": "/generate?wait=false", "body": {"text": "hi"}, "params": {"wait": "false"}},
    )
    assert plain["body"]["wait"] == "true"
    assert forced["body"]["wait"] == "true"


def test_generate_inline_audio(run_jobs: Callable[..., list[dict]]) -> None:
    (answer,) = run_jobs(
        {"path": "/generate", "body": {"text": "hi"}, "inline_audio": True, "audio_format": "flac"}
    )
    assert answer["body"]["id"] == "gen-1"
    audio = answer["audio"]
    assert audio["status_code"] == 200 and audio["content_type"] == "audio/flac"
    assert base64.b64decode(audio["body_base64"]) == wav_bytes(0.1)


def test_generate_inline_audio_over_budget(
    run_jobs: Callable[..., list[dict]], tmp_path: Path
) -> None:
    job = {"path": "/generate", "body": {"text": "hi", "id": "long"}, "inline_audio": True}
    spilled, refused = run_jobs(job, {**job, "inline_only": True}, result_budget_bytes=200_000)
    assert spilled["body"]["id"] == "long"
    export = spilled["audio"]["export"]
    data = (settings_for(tmp_path).exports_dir / export["name"]).read_bytes()
    assert data == wav_bytes(30.0) and export["name"].endswith(".wav")
    assert serialized_size(spilled) < 200_000
    assert "inline budget" in refused["error"]


def test_budget_spill_and_inline_only(run_jobs: Callable[..., list[dict]], tmp_path: Path) -> None:
    size = 300_000
    small, spilled, refused = run_jobs(
        {"method": "GET", "path": "/big", "params": {"size": 1000}},
        {"method": "GET", "path": "/big", "params": {"size": size}},
        {"method": "GET", "path": "/big", "params": {"size": size}, "inline_only": True},
        result_budget_bytes=100_000,
    )
    assert base64.b64decode(small["body_base64"]) == big_bytes(1000)
    assert spilled["spilled"] is True and spilled["status_code"] == 200
    assert spilled["headers"]["x-size"] == str(size)
    export = spilled["export"]
    assert export["name"].endswith(".bin") and export["size"] == size
    path = settings_for(tmp_path).exports_dir / export["name"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == export["sha256"]
    assert set(refused) == {"error"} and "inline_only" in refused["error"]


def test_admin_routes_refused_unless_allowed(run_jobs: Callable[..., list[dict]], app: Any) -> None:
    jobs = [
        {"path": "/models/load"},
        {"path": "/models/load/"},
        {"path": "/models/%6Coad"},
        {"path": "/models/unload"},
        {"path": "/volume/probe", "body": {"quick": True}},
    ]
    for answer in run_jobs(*jobs):
        assert "admin route" in answer["error"] and "VOICEBOX_ALLOW_ADMIN_JOBS" in answer["error"]
    assert not [hit for hit in app.state.hits if hit[1] != "/health"]
    allowed = run_jobs({"path": "/models/load"}, allow_admin_jobs=True)
    assert "error" not in allowed[0] and allowed[0]["status_code"] in {404, 405}  # reached the app


def test_envelope_errors_name_the_field_and_reach_nothing(
    run_jobs: Callable[..., list[dict]], app: Any
) -> None:
    answers = run_jobs(
        None,
        {"method": "GET"},
        {"path": "@evil/"},
        {"path": "/x", "files": {"f": {"content_base64": "%%%"}}},
        {"path": "/x", "params": {"a": {"b": 1}}},
    )
    fields = [a["error"].split(":")[0] for a in answers]
    assert fields == [
        "input",
        "input.path",
        "input.path",
        "input.files.f.content_base64",
        "input.params.a",
    ]
    assert app.state.hits == []


def test_job_timeout_is_an_error(run_jobs: Callable[..., list[dict]]) -> None:
    (answer,) = run_jobs(
        {"method": "GET", "path": "/slow", "params": {"seconds": 5}}, job_timeout_seconds=0.3
    )
    assert answer["error"].startswith("timeout:")


def test_cancellation_propagates(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_test_app())) as client:
            handler = JobHandler(settings, base_url="http://127.0.0.1:1", client=client)
            task = asyncio.create_task(
                handler(
                    {
                        "id": "c",
                        "input": {"method": "GET", "path": "/slow", "params": {"seconds": 5}},
                    }
                )
            )
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())


def test_transport_error_when_server_is_gone(tmp_path: Path) -> None:
    from tests.support.serverless import free_port

    settings = settings_for(tmp_path)
    handler = JobHandler(settings, base_url=f"http://127.0.0.1:{free_port()}")

    async def main() -> dict:
        try:
            return await handler({"id": "t", "input": {"method": "GET", "path": "/health"}})
        finally:
            await handler.aclose()

    answer = asyncio.run(main())
    assert answer["error"].startswith("transport: ConnectError")


def test_a_stream_job_fails_in_the_words_of_a_plain_job(tmp_path: Path) -> None:
    """Plain and stream jobs share one mapping of failures to error answers."""
    from tests.support.serverless import free_port

    settings = settings_for(tmp_path, job_timeout_seconds=2.5)
    handler = JobHandler(settings, base_url=f"http://127.0.0.1:{free_port()}")
    stream_input = {"method": "POST", "path": "/generate/stream", "body": {"text": "hi"}}

    async def main() -> tuple[dict, list[dict]]:
        try:
            plain = await handler({"id": "p", "input": {"method": "GET", "path": "/health"}})
            streamed = [item async for item in handler.stream({"id": "s", "input": stream_input})]
            return plain, streamed
        finally:
            await handler.aclose()

    plain, streamed = asyncio.run(main())
    assert plain["error"].startswith("transport: ConnectError talking to the local API")
    assert streamed == [plain]
    assert handler._failure(TimeoutError(), "job") == {
        "error": "timeout: the job ran past 2.5 s (VOICEBOX_JOB_TIMEOUT_SECONDS); keep it below the "
        "endpoint's execution timeout"
    }
    assert handler._failure(TimeoutError(), "stream") == {
        "error": "timeout: the stream ran past 2.5 s (VOICEBOX_JOB_TIMEOUT_SECONDS)"
    }
    assert handler._failure(OSError(28, "No space left on device"), "job")["error"].startswith(
        "export: could not write the answer to the volume:"
    )


def test_base_url_must_be_an_origin(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        JobHandler(settings_for(tmp_path), base_url="http://127.0.0.1:1/prefix")


# -- over real sockets: the SSRF canary ----------------------------------------------------------------------


@pytest.fixture()
def live(tmp_path: Path) -> Any:
    app = make_test_app()
    server = ServerThread(app, port=0).start()
    assert server.wait_ready(10)
    yield app, server
    server.stop()
    assert server.wait_exited(10)


def test_ssrf_never_reaches_another_port(live: Any, tmp_path: Path) -> None:
    app, server = live
    settings = settings_for(tmp_path, port=server.port, allow_admin_jobs=False)
    with Canary() as canary:
        c = canary.port
        hostile = [
            f"@127.0.0.1:{c}/",
            f"@127.0.0.1:{c}/job",
            f"//127.0.0.1:{c}/",
            f"http://127.0.0.1:{c}/",
            f"/@127.0.0.1:{c}/",
            f"127.0.0.1:{c}/",
            f"/%2f%2f127.0.0.1:{c}/",
            f"/..%2f..%2f127.0.0.1:{c}",
            f"\\\\127.0.0.1:{c}\\",
            f"/health\r\nHost: 127.0.0.1:{c}",
            f"/health HTTP/1.1\r\nHost: 127.0.0.1:{c}\r\n\r\nGET /",
        ]
        jobs: list[dict] = [{"method": "GET", "path": p} for p in hostile]
        jobs.append({"method": "GET", "path": "/echo", "headers": {"Host": f"127.0.0.1:{c}"}})
        jobs.append(
            {"method": "GET", "path": "/echo", "headers": {"X-A": f"1\r\nHost: 127.0.0.1:{c}"}}
        )

        async def main() -> list[dict]:
            handler = JobHandler(settings)  # the real default: the loopback origin on settings.port
            try:
                return [await handler({"id": f"s{i}", "input": j}) for i, j in enumerate(jobs)]
            finally:
                await handler.aclose()

        answers = asyncio.run(main())
    assert canary.hits == []
    for job, answer in zip(jobs[:-2], answers[:-2], strict=True):
        assert answer["error"].startswith("input.path"), (job, answer)
    assert answers[-2]["status_code"] == 200
    assert answers[-2]["body"]["headers"]["host"] == f"127.0.0.1:{server.port}"
    assert answers[-1]["error"].startswith("input.headers.X-A")
    assert [p for _, p in app.state.hits] == ["/echo"]


def test_handler_reuses_one_connection(live: Any, tmp_path: Path) -> None:
    _, server = live
    handler = JobHandler(settings_for(tmp_path), base_url=server.base_url)

    async def main() -> list[dict]:
        try:
            return await asyncio.gather(
                *(
                    handler({"id": f"p{i}", "input": {"method": "GET", "path": "/health"}})
                    for i in range(20)
                )
            )
        finally:
            await handler.aclose()

    assert all(a["status_code"] == 200 for a in asyncio.run(main()))


def test_server_thread_reports_bind_failure() -> None:
    holder = ServerThread(make_test_app(), port=0)
    try:
        with pytest.raises(OSError):
            ServerThread(make_test_app(), port=holder.port)
    finally:
        holder._sock.close()


def test_importing_the_serverless_modules_has_no_side_effects(tmp_path: Path) -> None:
    """No runpod (it reads env and argv), no torch, no files written, no worker started."""
    import subprocess
    import sys

    from tests.support.serverless import REPO

    code = (
        "import sys, backend.serverless.launcher, backend.serverless.handler, "
        "backend.serverless.answers, backend.serverless.envelope, backend.serverless_handler\n"
        "bad = [m for m in ('runpod', 'torch', 'uvicorn') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(REPO)}, timeout=60
    )
    assert done.returncode == 0
    assert list(tmp_path.iterdir()) == []
