"""The image rehearsal's Dockerfile interpreter (scripts/rehearse_*.py); the rehearsal itself runs in CI
from scripts/test.sh (root + debootstrap), and by hand: ``sudo scripts/rehearse-image.sh``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import rehearse_dockerfile as rehearsal
import rehearse_image
import rehearse_root

ROOT = Path(__file__).resolve().parents[1]


def test_the_real_dockerfile_is_rehearsable() -> None:
    global_args, stages = rehearsal.parse_dockerfile((ROOT / "Dockerfile").read_text())
    for target in ("serverless", "pod"):
        chain = rehearsal.stage_chain(stages, target)
        assert rehearsal.BASE_IMAGE.match(chain[0].base), chain[0].base
        assert chain[-1].name == target
        rehearsal.final_stage_only_sets_runtime(stages, target)
        ops = {ins.op for stage in chain for ins in stage.instructions}
        assert ops <= {"ARG", "ENV", "WORKDIR", "COPY", "RUN", "USER", "CMD", "EXPOSE", "LABEL"}


def test_parse_joins_continuations_and_reads_stages() -> None:
    text = (
        "# comment\nARG X=1\nFROM debian:bookworm-slim AS base\n"
        "ENV A=1 \\\n    B=$A/x\nRUN echo a \\\n # inner comment\n && echo b\n"
        'FROM base AS app\nCMD ["python", "-u", "handler.py"]\n'
    )
    global_args, stages = rehearsal.parse_dockerfile(text)
    assert global_args == {"X": "1"}
    assert [s.name for s in stages] == ["base", "app"]
    env = rehearsal.parse_env(stages[0].instructions[0].args, {})
    assert env == {"A": "1", "B": "1/x"}
    assert " ".join(stages[0].instructions[1].args.split()) == "echo a && echo b"
    assert [s.name for s in rehearsal.stage_chain(stages, "app")] == ["base", "app"]
    with pytest.raises(rehearsal.RehearsalError):
        rehearsal.stage_chain(stages, "missing")


def test_a_target_stage_that_changes_files_is_refused() -> None:
    _, stages = rehearsal.parse_dockerfile("FROM debian:bookworm-slim AS pod\nRUN touch /x\n")
    with pytest.raises(rehearsal.RehearsalError, match="RUN"):
        rehearsal.final_stage_only_sets_runtime(stages, "pod")


def test_copy_honours_dockerignore_and_refuses_missing_sources(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    (context / "backend" / "__pycache__").mkdir(parents=True)
    (context / "backend" / "a.py").write_text("x")
    (context / "backend" / "__pycache__" / "a.pyc").write_text("x")
    (context / "README.md").write_text("r")
    root = tmp_path / "root"
    patterns = ["**/__pycache__", "docs"]
    copied = rehearsal.copy_into(context, ["backend"], "./backend", root, "/app", patterns)
    assert copied == ["backend/a.py"]
    assert (root / "app/backend/a.py").exists()
    assert not (root / "app/backend/__pycache__").exists()
    rehearsal.copy_into(context, ["README.md"], "./", root, "/app", patterns)
    assert (root / "app/README.md").read_text() == "r"
    with pytest.raises(rehearsal.RehearsalError, match="not in the build context"):
        rehearsal.copy_into(context, ["docs"], "./docs", root, "/app", patterns)


def test_ignore_rules() -> None:
    patterns = [".git", "**/__pycache__", "*.egg-info", "tests", "!tests/keep.py"]
    assert rehearsal.ignored("tests/test_x.py", patterns)
    assert not rehearsal.ignored("tests/keep.py", patterns)
    assert rehearsal.ignored("backend/api/__pycache__/x.pyc", patterns)
    assert rehearsal.ignored("voicebox_worker.egg-info/PKG-INFO", patterns)
    assert not rehearsal.ignored("backend/app.py", patterns)


def test_nothing_is_deleted_through_a_mount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    (work / "root/dev").mkdir(parents=True)
    monkeypatch.setattr(rehearse_root, "mounted_under", lambda _path: [str(work / "root/dev")])
    rehearse_root.remove_root(work)
    assert work.exists()


class _NoChroot:
    """Stands in for ``Chroot`` where the instructions run nothing in the root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def command(self, *args: object, **kwargs: object) -> list[str]:
        raise AssertionError("nothing may run in the root here")


def test_build_tracks_args_env_workdir_user_and_cmd_through_the_stages(tmp_path: Path) -> None:
    text = (
        "ARG BASE=bookworm\nFROM debian:${BASE}-slim AS base\nARG TORCH_CUDA=cu124\n"
        "ENV DEVICE=$TORCH_CUDA HOME_DIR=/srv\nWORKDIR /app/$DEVICE\nEXPOSE 80\n"
        'FROM base AS app\nUSER 1000\nLABEL a=b\nCMD ["python", "-u", "handler.py"]\n'
    )
    global_args, stages = rehearsal.parse_dockerfile(text)
    chroot: Any = _NoChroot(tmp_path)
    built = rehearse_image.build(
        chroot, rehearsal.stage_chain(stages, "app"), global_args, {"TORCH_CUDA": "cpu"}, {}, set()
    )
    assert built.env["DEVICE"] == "cpu" and built.env["HOME_DIR"] == "/srv"
    assert built.workdir == "/app/cpu" and (tmp_path / "app/cpu").is_dir()
    assert built.user == "1000"
    assert built.cmd == ["python", "-u", "handler.py"]
    assert built.steps == []  # only RUN and COPY are timed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('FROM alpine:3 AS app\nCMD ["x"]\n', "Debian slim base"),
        ('FROM debian:bookworm-slim AS app\nHEALTHCHECK NONE\nCMD ["x"]\n', "not rehearsed"),
        ("FROM debian:bookworm-slim AS app\nCOPY --chown=1 a b\n", "COPY options"),
        ("FROM debian:bookworm-slim AS app\nENV A=1\n", "no CMD"),
    ],
)
def test_build_refuses_what_it_cannot_rehearse(tmp_path: Path, text: str, message: str) -> None:
    global_args, stages = rehearsal.parse_dockerfile(text)
    chroot: Any = _NoChroot(tmp_path)
    with pytest.raises(rehearsal.RehearsalError, match=message):
        rehearse_image.build(chroot, stages, global_args, {}, {}, set())
