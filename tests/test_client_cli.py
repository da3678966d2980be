"""``voicebox-worker remote ...`` end to end: argparse → client → RunPod mock → job handler → stub
app.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from backend.client.cli import add_commands, main
from tests.support.audio import wav_bytes
from tests.support.runpod_mock import Stack, start_stack

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    stack = start_stack(tmp_path)
    monkeypatch.chdir(tmp_path)  # no stray ./.env
    monkeypatch.setenv("RUNPOD_API_KEY", stack.mock.api_key)
    monkeypatch.setenv("VOICEBOX_ENDPOINT_ID", stack.mock.endpoint_id)
    monkeypatch.setenv("RUNPOD_API_BASE", stack.mock.api_base)
    yield stack
    stack.mock.stop()


def test_remote_commands(stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["remote", "health", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "healthy"

    assert main(["remote", "profiles", "create", "Alice", "--language", "en"]) == 0
    assert "created Alice" in capsys.readouterr().out
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav_bytes(0.3, amp=0.0))
    assert main(["remote", "profiles", "add-sample", "Alice", str(clip), "--text", "Hi."]) == 0
    capsys.readouterr()
    assert main(["remote", "profiles", "list", "--json"]) == 0
    assert [p["name"] for p in json.loads(capsys.readouterr().out)] == ["Alice"]

    out = tmp_path / "out.wav"
    assert main(["remote", "say", "--profile", "Alice", "Hello there", "-o", str(out)]) == 0
    assert out.read_bytes().startswith(b"RIFF")
    assert f"wrote {out}" in capsys.readouterr().out

    stack.mock.queue_delay = 0.1
    assert main(["remote", "say", "--profile", "Alice", "long " * 100, "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "IN_QUEUE" in captured.err  # progress for long jobs, on stderr
    stack.mock.queue_delay = 0.0

    assert main(["remote", "history", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 2
    assert main(["remote", "history"]) == 0
    assert "(2 of 2)" in capsys.readouterr().out

    bundle = tmp_path / "alice.zip"
    assert main(["remote", "export", "Alice", "-o", str(bundle), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bytes"] == bundle.stat().st_size
    assert main(["remote", "import", str(bundle), "-q"]) == 0
    assert "imported Alice (imported)" in capsys.readouterr().out

    assert main(["remote", "transcribe", str(clip)]) == 0
    assert "stub transcript" in capsys.readouterr().out


def test_exit_codes(stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert main(["remote", "say", "--profile", "Nobody", "hi", "-o", "x.wav"]) == 1
    assert "no profile named 'Nobody'" in capsys.readouterr().err
    assert main(["remote", "import"]) == 2
    monkeypatch.delenv("RUNPOD_API_KEY")
    assert main(["remote", "health"]) == 2
    assert "RUNPOD_API_KEY" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["remote", "say", "hi"])  # --profile and -o missing
    assert info.value.code == 2


def test_add_commands_sets_handlers_for_the_worker_cli() -> None:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bridge", "--endpoint", "ep1", "--port", "18000"])
    assert (args.endpoint, args.port, args.host) == ("ep1", 18000, "127.0.0.1")
    assert callable(args.handler)
    args = parser.parse_args(["remote", "profiles", "list", "--json"])
    assert args.json is True and callable(args.handler)
