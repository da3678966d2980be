"""No network at start: a worker start is traced (strace) and must not try to reach anything off the machine.

Why: ``import qwen_tts`` imported onnxruntime (and ran ``sox -h``) at every start although only the 25 Hz
tokenizer uses them; a worker on a volume with its models must start with no DNS look-up and no connection.
Loopback (the worker's own API) and Unix sockets are allowed; any other connect()/sendto() target fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backend.engines import quiet_imports

ROOT = Path(__file__).resolve().parents[1]
CALL = re.compile(r"^\d+\s+(connect|sendto|sendmsg)\((\d+),\s*\{sa_family=(AF_INET6?),(.*?)\}")
LOOPBACK = re.compile(r'inet_addr\("127\.|inet_pton\(AF_INET6,\s*"::1"|"::ffff:127\.')


def off_machine_attempts(trace: str) -> list[str]:
    """The traced calls that aim at an address other than loopback (a DNS server included)."""
    found = []
    for line in trace.splitlines():
        match = CALL.match(line)
        if match and not LOOPBACK.search(match.group(4)):
            found.append(line)
    return found


def test_the_trace_reader_sees_dns_and_connections() -> None:
    dns = '7 connect(5, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.2")}, 16) = 0'
    web = '7 connect(5, {sa_family=AF_INET6, sin6_port=htons(443), inet_pton(AF_INET6, "2606::1", &x)}, 28) = -1'
    local = '7 connect(5, {sa_family=AF_INET, sin_port=htons(8000), sin_addr=inet_addr("127.0.0.1")}, 16) = 0'
    unix = '7 connect(5, {sa_family=AF_UNIX, sun_path="/run/x"}, 110) = 0'
    assert off_machine_attempts("\n".join([dns, web, local, unix])) == [dns, web]


def test_onnxruntime_and_sox_are_deferred_until_used(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in quiet_imports.DEFERRED_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    registered = quiet_imports.defer_unused_imports()
    assert set(registered) == {"onnxruntime", "sox"}
    deferred = sys.modules["onnxruntime"]
    assert isinstance(deferred, quiet_imports._DeferredModule)
    assert deferred.__spec__ is not None  # find_spec keeps answering
    assert callable(deferred.SessionOptions)  # first use imports the real module
    assert not isinstance(sys.modules["onnxruntime"], quiet_imports._DeferredModule)
    monkeypatch.delitem(sys.modules, "sox", raising=False)


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("strace") is None, reason="strace missing (scripts/test.sh installs it)"
)
def test_worker_start_makes_no_off_machine_network_attempt(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICEBOX_", "RUNPOD_", "HF_"))}
    env.update(
        {
            "VOICEBOX_VOLUME": str(tmp_path / "volume"),
            "VOICEBOX_LOCAL_DIR": str(tmp_path / "local"),
            "VOICEBOX_TTS_MODEL": "voicebox-demo/tiny-qwen3-tts-base",
            "VOICEBOX_STT_MODEL": "voicebox-demo/tiny-whisper",
            "SERVERLESS": "1",
        }
    )
    (tmp_path / "volume").mkdir()
    trace = tmp_path / "trace.txt"
    job = json.dumps({"input": {"method": "GET", "path": "/health"}})
    result = subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=connect,sendto,sendmsg",
            "-o",
            str(trace),
            sys.executable,
            "-m",
            "backend.serverless_handler",
            "--test_input",
            job,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "'status_code': 200" in result.stdout + result.stderr
    assert off_machine_attempts(trace.read_text()) == []
    for noise in ("flash-attn is not installed", "sox: not found", "talker_config is None"):
        assert noise not in result.stdout + result.stderr


def test_importing_qwen_tts_skips_what_the_worker_never_uses() -> None:
    """onnxruntime and sox stay deferred and scikit-learn is not imported (start time), in a fresh interpreter."""
    code = (
        "import sys\n"
        "from backend.engines.qwen import import_qwen_tts\n"
        "import_qwen_tts()\n"
        "from backend.engines.quiet_imports import _DeferredModule\n"
        "print(sorted(n for n in ('onnxruntime', 'sox') if not isinstance(sys.modules.get(n), _DeferredModule)),"
        " 'sklearn' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[] False"
