"""Docs that run: every shell and Python example in README.md and docs/ that talks to a worker is executed here
against a real local worker (``scripts/run-local.sh`` with the demo models).

Each such fenced block carries a marker on the line before it: ``<!-- doc-test: run -->`` (executed here) or
``<!-- doc-test: skip <reason> -->`` (the reason says why not, e.g. it needs S3 credentials). A block that talks to a
worker without a marker fails the test, so a new example cannot slip in unexecuted. The examples address RunPod;
here ``VOICEBOX_LOCAL_URL`` (the client and ``remote``) and ``EP`` (curl) point them at the local worker, and
``localhost:8000`` is rewritten to the fixture's port. Uploads use real sizes (a 10 s WAV, past the ~128 KB a
single shell argument may hold).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.audio import write_wav
from tests.support.local_worker import LocalWorker, start_local_worker

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TALKS = re.compile(
    r"runsync|voicebox-worker (remote|bridge)|VoiceboxClient|localhost:\d|127\.0\.0\.1:\d|api\.runpod\.ai|OpenAI\("
)
BLOCK = re.compile(
    r"(?:<!-- doc-test: (?P<marker>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S
)
FAILED_ANSWER = re.compile(r'"status_code":\s*[45]\d\d|"status":\s*"FAILED"')


def blocks() -> list[tuple[str, str, str | None, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in BLOCK.finditer(text):
            lang, body = match.group("lang"), match.group("body")
            if lang in {"bash", "sh", "python"} and TALKS.search(body):
                line = text[: match.start("body")].count("\n")
                found.append((f"{doc.relative_to(ROOT)}:{line}", lang, match.group("marker"), body))
    return found


BLOCKS = blocks()


def test_every_example_that_talks_to_a_worker_is_marked() -> None:
    unmarked = [where for where, _lang, marker, _body in BLOCKS if marker is None]
    assert not unmarked, (
        f"examples without <!-- doc-test: run|skip reason --> before them: {unmarked}"
    )
    for where, _lang, marker, _body in BLOCKS:
        assert marker == "run" or (marker.startswith("skip ") and len(marker) > 12), (where, marker)
    assert sum(marker == "run" for _w, _l, marker, _b in BLOCKS) >= 5


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    worker = start_local_worker(tmp_path_factory.mktemp("docs-worker"))
    print(f"\nlocal worker: first answer {worker.first_answer_s:.1f} s after run-local.sh started")
    yield worker
    worker.stop()


@pytest.fixture
def workspace(tmp_path: Path, worker: LocalWorker) -> Path:
    """The files the examples name, at real sizes, on a library emptied of earlier examples' profiles."""
    listed = worker.runsync({"method": "GET", "path": "/profiles"})["output"]["body"]
    for profile in listed:
        worker.runsync({"method": "DELETE", "path": f"/profiles/{profile['id']}"})
    write_wav(tmp_path / "me.wav", 10.0, freq=180.0)
    write_wav(tmp_path / "alice.wav", 4.0, freq=180.0)
    (tmp_path / "chapter1.txt").write_text("It was a bright cold day in April. " * 20)
    shutil.copy(tmp_path / "me.wav", tmp_path / "ref.wav")
    return tmp_path


def _env(worker: LocalWorker) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICEBOX_", "RUNPOD_"))}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            "VOICEBOX_LOCAL_URL": worker.url,
            "EP": worker.url,
            "RUNPOD_API_KEY": "not-needed-locally",
        }
    )
    return env


RUN = [(where, lang, body) for where, lang, marker, body in BLOCKS if marker == "run"]


@pytest.mark.slow
@pytest.mark.parametrize(("where", "lang", "body"), RUN, ids=[r[0] for r in RUN])
def test_example_runs_against_a_local_worker(
    where: str, lang: str, body: str, worker: LocalWorker, workspace: Path
) -> None:
    port = worker.url.rsplit(":", 1)[1]
    for local in ("localhost:8000", "127.0.0.1:8000"):
        body = body.replace(local, f"127.0.0.1:{port}")
    if lang == "python":
        command = [sys.executable, "-c", body]
    else:
        command = ["bash", "-c", "set -eo pipefail\n" + body]
    result = subprocess.run(
        command, cwd=workspace, env=_env(worker), capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{where} failed ({result.returncode}):\n{output[-4000:]}"
    assert not FAILED_ANSWER.search(result.stdout), (
        f"{where} got an error answer:\n{output[-4000:]}"
    )


def test_first_answer_and_quiet_start(worker: LocalWorker) -> None:
    """The figure the README promises is printed by the fixture; the start log has no alarming line."""
    log = worker.log.read_text()
    for noise in (
        "flash-attn is not installed",
        "sox: not found",
        "SoX could not be found",
        "talker_config is None",
        "Traceback",
    ):
        assert noise not in log, noise


def test_runpod_hub_tests_pass_on_a_fresh_worker(worker: LocalWorker) -> None:
    """.runpod/tests.json runs on the demo models (built by the worker itself: no volume, no download)."""
    import json

    spec = json.loads((ROOT / ".runpod" / "tests.json").read_text())
    env = {item["key"]: item["value"] for item in spec["config"]["env"]}
    assert env["VOICEBOX_TTS_MODEL"] == "voicebox-demo/tiny-qwen3-tts-base"
    assert env["VOICEBOX_STT_MODEL"] == "voicebox-demo/tiny-whisper"
    for test in spec["tests"]:
        answer = worker.runsync(test["input"], timeout=test["timeout"] / 1000)
        assert answer["status"] == "COMPLETED", (test["name"], answer)
        assert answer["output"]["status_code"] < 400, (test["name"], answer)
