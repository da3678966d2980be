"""Docs that run: every shell and Python example in README.md and docs/ that talks to a worker is executed here
against a real local worker (``scripts/run-local.sh`` with the demo models).

Each such fenced block carries a marker on the line before it, and there is no "skip":

- ``<!-- doc-test: run [options] -->``: executed (bash with ``set -eo pipefail``, or ``python -c``) in a folder
  holding the files the examples name at real sizes (a 10 s ``me.wav``, past the ~128 KB a single shell argument
  may hold). It fails on a non-zero exit or an error answer (a 4xx/5xx ``status_code``, a FAILED job) in its
  output. Options:
  - ``stream-jobs``: against a second local worker started with ``VOICEBOX_STREAM_JOBS=1`` (the generator
    handler; its ``/runsync`` outputs are lists). ``STREAM_METHOD=POST``: the SDK's local API reads
    ``/stream/<id>`` by POST where RunPod uses GET (the example says so).
  - ``bridge``: a ``voicebox-worker bridge --local`` in front of the plain worker, started with ``HOME`` in a
    temporary folder, so its token is in ``~/.config/voicebox-worker/bridge-token`` as the docs say;
    ``localhost:17493`` is rewritten to its port.
  - ``profile=NAME``: a profile NAME with one sample exists before the example runs; ``PROFILE_ID`` holds its id.
  - ``bundle=FILE``: FILE is a bundle exported from a profile the worker then forgot (for an import example).
  - ``creates=FILE[,FILE]``: after the run each FILE exists, and audio files are not empty.
  - ``aws-stand-in``: ``aws`` on PATH is a stand-in for RunPod's S3 API: ``aws s3 cp SRC s3://<volume>/KEY``
    copies SRC to KEY on the worker's volume (RunPod's S3 API cannot be reached from a test).
- ``<!-- doc-test: serve -->``: each command line starts a long-running server (``scripts/run-local.sh``,
  ``--rp_serve_api``, ``bridge``). Each is started on a free port (``--port N`` / ``--rp_api_port N`` replaced,
  ``--port`` added to a bridge line without one, ``PORT`` set for ``run-local.sh``), must answer HTTP on it
  within its start-up time, and is stopped.

Every example gets ``VOICEBOX_LOCAL_URL`` (the client, ``remote`` and ``bridge``) and ``EP`` (curl) pointing at
its worker, ``localhost:8000`` rewritten to that worker's port, and for anything that starts a worker itself
(``--test_input``, ``serve`` blocks) ``VOICEBOX_VOLUME`` in a temporary folder with
``VOICEBOX_TTS_MODEL=fake VOICEBOX_STT_MODEL=fake`` (as ``docs/serverless.md`` says, "runs without models") and
``VOICEBOX_PORT=0`` (its loopback API on any free port).
``aplay`` and ``ffplay`` are stand-ins that read the piped audio and fail unless it is WAV or MP3.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.audio import write_wav
from tests.support.local_worker import LocalWorker, free_port, start_local_worker

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TALKS = re.compile(
    r"runsync|voicebox-worker (remote|bridge)|VoiceboxClient|localhost:\d|127\.0\.0\.1:\d|api\.runpod\.ai|OpenAI\("
)
BLOCK = re.compile(
    r"(?:<!-- doc-test: (?P<marker>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S
)
FAILED_ANSWER = re.compile(r'"status_code":\s*[45]\d\d|"status":\s*"FAILED"')
OPTIONS = re.compile(r"^(stream-jobs|bridge|aws-stand-in|(profile|bundle|creates)=\S+)$")
BRIDGE_PORT = "17493"


@dataclass(frozen=True)
class Example:
    where: str
    lang: str
    marker: str | None
    body: str

    @property
    def kind(self) -> str | None:
        return self.marker.split()[0] if self.marker else None

    @property
    def options(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for word in (self.marker or "").split()[1:]:
            key, _, value = word.partition("=")
            found[key] = value or "yes"
        return found


def examples() -> list[Example]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in BLOCK.finditer(text):
            lang, body = match.group("lang"), match.group("body")
            if lang in {"bash", "sh", "python"} and TALKS.search(body):
                line = text[: match.start("body")].count("\n")
                found.append(
                    Example(f"{doc.relative_to(ROOT)}:{line}", lang, match.group("marker"), body)
                )
    return found


EXAMPLES = examples()
RUN = [e for e in EXAMPLES if e.kind == "run"]
SERVE = [e for e in EXAMPLES if e.kind == "serve"]


def test_every_example_that_talks_to_a_worker_is_executed() -> None:
    unmarked = [e.where for e in EXAMPLES if e.marker is None]
    assert not unmarked, f"examples without <!-- doc-test: run|serve --> before them: {unmarked}"
    for example in EXAMPLES:
        assert example.kind in {"run", "serve"}, (example.where, example.marker)
        bad = [w for w in (example.marker or "").split()[1:] if not OPTIONS.match(w)]
        assert not bad, (example.where, bad)
    assert len(RUN) >= 10 and len(SERVE) >= 3


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorker]:
    worker = start_local_worker(tmp_path_factory.mktemp("docs-worker"))
    print(f"\nlocal worker: first answer {worker.first_answer_s:.1f} s after run-local.sh started")
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def stream_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorker]:
    worker = start_local_worker(
        tmp_path_factory.mktemp("docs-stream-worker"), VOICEBOX_STREAM_JOBS="1"
    )
    yield worker
    worker.stop()


@dataclass
class Bridge:
    url: str
    home: Path
    process: subprocess.Popen
    log: Path = field(repr=False)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _answers_http(port: int, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Wait until something answers HTTP on ``port`` (any status: the bridge refuses a bare request)."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing answered on :{port}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def bridge(worker: LocalWorker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    home = tmp_path_factory.mktemp("bridge-home")
    port = free_port()
    log = home / "bridge.log"
    env = {**_base_env(home), "HOME": str(home)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["voicebox-worker", "bridge", "--local", worker.url, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _answers_http(port, process, log, 120)
        assert (home / ".config" / "voicebox-worker" / "bridge-token").is_file()
        yield Bridge(f"http://127.0.0.1:{port}", home, process, log)
    finally:
        _stop(process)


def _base_env(tmp: Path) -> dict[str, str]:
    (tmp / "example-volume").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICEBOX_", "RUNPOD_"))}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            "RUNPOD_API_KEY": "not-needed-locally",
            "VOICEBOX_VOLUME": str(tmp / "example-volume"),
            "VOICEBOX_LOCAL_DIR": str(tmp / "example-local"),
            "VOICEBOX_TTS_MODEL": "fake",
            "VOICEBOX_STT_MODEL": "fake",
            "VOICEBOX_PORT": "0",  # a worker's loopback API: any free port, never a fixture's
        }
    )
    return env


def _answer(job: dict) -> dict:
    """The API answer of a ``/runsync`` job; a generator handler's output is ``[answer]``."""
    assert job.get("status") == "COMPLETED", job
    output = job["output"]
    return output[0] if isinstance(output, list) else output


def _reset_library(worker: LocalWorker) -> None:
    """No profile left from an earlier example, so each example starts from the same library."""
    for profile in _answer(worker.runsync({"method": "GET", "path": "/profiles"}))["body"]:
        worker.runsync({"method": "DELETE", "path": f"/profiles/{profile['id']}"})


def _given_profile(worker: LocalWorker, name: str, sample: Path) -> str:
    created = _answer(worker.runsync({"path": "/profiles", "body": {"name": name}}))
    assert created["status_code"] == 200, created
    profile_id = created["body"]["id"]
    added = _answer(
        worker.runsync(
            {
                "path": f"/profiles/{profile_id}/samples",
                "files": {
                    "file": {
                        "filename": sample.name,
                        "content_base64": base64.b64encode(sample.read_bytes()).decode(),
                        "content_type": "audio/wav",
                    }
                },
                "form": {"reference_text": "The exact words spoken in the sample."},
            }
        )
    )
    assert added["status_code"] < 400, added
    return str(profile_id)


def _given_bundle(worker: LocalWorker, path: Path, sample: Path) -> None:
    profile_id = _given_profile(worker, "Big Voice", sample)
    exported = _answer(worker.runsync({"method": "GET", "path": f"/profiles/{profile_id}/export"}))
    path.write_bytes(base64.b64decode(exported["body_base64"]))
    worker.runsync({"method": "DELETE", "path": f"/profiles/{profile_id}"})


STAND_INS = {
    # the audio a player would get: WAV (RIFF) or MP3 (ID3 tag or a frame sync), never nothing
    "aplay": "data = sys.stdin.buffer.read()\nsys.exit(0 if data[:4] == b'RIFF' and len(data) > 44 else 1)",
    "ffplay": (
        "data = sys.stdin.buffer.read()\n"
        "ok = len(data) > 100 and (data[:3] == b'ID3' or (data[0] == 0xFF and data[1] & 0xE0 == 0xE0))\n"
        "sys.exit(0 if ok else 1)"
    ),
    # aws s3 cp SRC s3://<volume id>/KEY ...: SRC lands at KEY on the worker's volume
    "aws": (
        "args = sys.argv[1:]\n"
        "assert args[:2] == ['s3', 'cp'], args\n"
        "src, dst = args[2], args[3]\n"
        "assert dst.startswith('s3://') and '--endpoint-url' in args, args\n"
        "key = dst[len('s3://'):].split('/', 1)[1]\n"
        "target = pathlib.Path(os.environ['STAND_IN_VOLUME']) / key\n"
        "target.parent.mkdir(parents=True, exist_ok=True)\n"
        "shutil.copyfile(src, target)"
    ),
}


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("stand-ins")
    for name, body in STAND_INS.items():
        script = folder / name
        script.write_text(f"#!{sys.executable}\nimport os, pathlib, shutil, sys\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The files the examples name, at real sizes."""
    write_wav(tmp_path / "me.wav", 10.0, freq=180.0)
    write_wav(tmp_path / "alice.wav", 4.0, freq=180.0)
    (tmp_path / "chapter1.txt").write_text("It was a bright cold day in April. " * 20)
    shutil.copy(tmp_path / "me.wav", tmp_path / "ref.wav")
    return tmp_path


# ------------------------------------------------------------------------------------------------- running


def _localised(body: str, port: str, bridge_port: str | None) -> str:
    for host in ("localhost", "127.0.0.1"):
        body = body.replace(f"{host}:8000", f"127.0.0.1:{port}")
        if bridge_port:
            body = body.replace(f"{host}:{BRIDGE_PORT}", f"127.0.0.1:{bridge_port}")
    return body


@pytest.mark.slow
@pytest.mark.parametrize("example", RUN, ids=[e.where for e in RUN])
def test_example_runs_against_a_local_worker(
    example: Example, request: pytest.FixtureRequest, workspace: Path, stand_ins: Path
) -> None:
    options = example.options
    target: LocalWorker = request.getfixturevalue(
        "stream_worker" if "stream-jobs" in options else "worker"
    )
    env = _base_env(workspace)
    env.update(
        {
            "PATH": f"{stand_ins}:{env['PATH']}",
            "VOICEBOX_LOCAL_URL": target.url,
            "EP": target.url,
            "STREAM_METHOD": "POST",
            "STAND_IN_VOLUME": str(target.volume),
        }
    )
    bridge_port = None
    if "bridge" in options:
        running: Bridge = request.getfixturevalue("bridge")
        env["HOME"] = str(running.home)
        bridge_port = running.url.rsplit(":", 1)[1]
    _reset_library(target)
    if "profile" in options:
        env["PROFILE_ID"] = _given_profile(target, options["profile"], workspace / "alice.wav")
    if "bundle" in options:
        _given_bundle(target, workspace / options["bundle"], workspace / "alice.wav")
    body = _localised(example.body, target.url.rsplit(":", 1)[1], bridge_port)
    if example.lang == "python":
        command = [sys.executable, "-c", body]
    else:
        command = ["bash", "-c", "set -eo pipefail\n" + body]
    result = subprocess.run(
        command, cwd=workspace, env=env, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    where = example.where
    assert result.returncode == 0, f"{where} failed ({result.returncode}):\n{output[-4000:]}"
    assert not FAILED_ANSWER.search(result.stdout), (
        f"{where} got an error answer:\n{output[-4000:]}"
    )
    for name in filter(None, options.get("creates", "").split(",")):
        created = workspace / name
        assert created.is_file() and created.stat().st_size > 0, f"{where}: {name} not written"


def _serve_command(line: str, port: int) -> str:
    line = re.sub(r"(--port|--rp_api_port)(\s+|=)\d+", rf"\g<1> {port}", line)
    if "voicebox-worker bridge" in line and "--port" not in line:
        line += f" --port {port}"
    return line


@pytest.mark.slow
@pytest.mark.parametrize("example", SERVE, ids=[e.where for e in SERVE])
def test_server_example_starts_and_answers(
    example: Example, worker: LocalWorker, tmp_path: Path
) -> None:
    lines = [
        re.sub(r"\s+#.*$", "", line).strip()
        for line in example.body.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines, example.where
    for number, line in enumerate(lines):
        port = free_port()
        env = {
            **_base_env(tmp_path / f"server-{number}"),
            "PORT": str(port),
            "HOME": str(tmp_path),
            "VOICEBOX_LOCAL_URL": worker.url,
        }
        log = tmp_path / f"server-{number}.log"
        command = _serve_command(line, port)
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", command],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _answers_http(port, process, log, 180)
        except AssertionError as err:
            raise AssertionError(f"{example.where}: `{shlex.quote(command)}`: {err}") from None
        finally:
            _stop(process)


# ------------------------------------------------------------------------------------------ the worker itself


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
    spec = json.loads((ROOT / ".runpod" / "tests.json").read_text())
    env = {item["key"]: item["value"] for item in spec["config"]["env"]}
    assert env["VOICEBOX_TTS_MODEL"] == "voicebox-demo/tiny-qwen3-tts-base"
    assert env["VOICEBOX_STT_MODEL"] == "voicebox-demo/tiny-whisper"
    for test in spec["tests"]:
        answer = worker.runsync(test["input"], timeout=test["timeout"] / 1000)
        assert answer["status"] == "COMPLETED", (test["name"], answer)
        assert answer["output"]["status_code"] < 400, (test["name"], answer)
