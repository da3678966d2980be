"""Under ``--json`` every command's failure is JSON on stdout (and one line on stderr), whatever failed:
usage, settings, or the operation itself."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from backend.cli import build_parser, main


def leaf_commands() -> list[list[str]]:
    """Every command of ``voicebox-worker`` (the argv that names it), from the parser itself."""

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [prefix]
        found: list[list[str]] = []
        for name, child in subs[0].choices.items():
            found.extend(walk(child, [*prefix, name]))
        return found

    return walk(build_parser(), [])


COMMANDS = leaf_commands()


def _json_failure(capsys: pytest.CaptureFixture[str], code: int) -> dict:
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, f"nothing on stdout (stderr: {err!r})"
    payload = json.loads(lines[-1])
    assert payload["ok"] is False and payload["exit_code"] == code and payload["error"]
    assert err.startswith("voicebox-worker:") or "usage:" in err
    return payload


def test_every_command_is_found() -> None:
    names = {" ".join(c) for c in COMMANDS}
    assert {"db adopt", "serve", "volume fsck", "remote health", "bridge", "models status"} <= names


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_usage_errors_are_json(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--json", "--no-such-option"])
    assert exited.value.code == 2
    payload = _json_failure(capsys, 2)
    assert payload["error_type"] == "usage"


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_settings_errors_are_json(
    command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICEBOX_LOG_LEVEL", "LOUD")
    required = {"db downgrade": ["x"], "db restore": ["x"], "db adopt": ["x"]}
    extra = required.get(" ".join(command), [])
    if command[0] == "remote" and command[-1] in {"create", "add-sample", "say", "export"}:
        pytest.skip("needs positional arguments; covered by test_usage_errors_are_json")
    if " ".join(command) in {"remote transcribe", "profiles import"}:
        extra = ["x"]
    if " ".join(command) == "profiles export":
        extra = ["--all", "out.zip"]
    code = main([*command, *extra, "--json"])
    assert code == 2
    assert "VOICEBOX_LOG_LEVEL" in _json_failure(capsys, 2)["error"]


def test_operation_failures_are_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICEBOX_VOLUME", str(tmp_path / "volume"))
    monkeypatch.setenv("VOICEBOX_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    cases = [
        (["db", "adopt", str(tmp_path / "nowhere"), "--json"], 1),
        (["db", "current", "--json"], 1),
        (["db", "restore", "nosuch.db", "--json"], 2),
        (["profiles", "import", str(tmp_path / "nosuch.zip"), "--json"], 1),
        (["remote", "health", "--json"], 2),
        (["remote", "say", "--profile", "x", "-o", str(tmp_path / "o.wav"), " ", "--json"], 2),
    ]
    for argv, code in cases:
        assert main(argv) == code, argv
        _json_failure(capsys, code)
