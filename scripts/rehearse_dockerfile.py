"""The Dockerfile as the image rehearsal reads it: stages, ARG/ENV expansion, ``.dockerignore`` and COPY.

Why a module of its own: this is the part of ``rehearse_image.py`` that needs no root, no chroot and no network --
pure reading of the Dockerfile and the build context -- so it is tested directly (tests/test_rehearsal.py) while
the rehearsal itself runs in CI as root.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

#: a Debian slim base -> the debootstrap release that makes the same root
BASE_IMAGE = re.compile(r"^debian:(?P<release>[a-z]+)(?:-\d+)?-slim$")


class RehearsalError(RuntimeError):
    """One line that says which step failed and why."""


@dataclass
class Instruction:
    op: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs (before the first FROM) and the stages, continuation lines joined, comments dropped."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    for number, line in logical:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            match = re.match(r"^(\S+)(?:\s+AS\s+(\S+))?$", rest.strip(), re.I)
            if match is None:
                raise RehearsalError(f"Dockerfile:{number}: cannot read FROM {rest!r}")
            stages.append(Stage(base=match.group(1), name=match.group(2)))
        elif not stages:
            if op != "ARG":
                raise RehearsalError(f"Dockerfile:{number}: {op} before the first FROM")
            key, _, value = rest.strip().partition("=")
            global_args[key] = value
        else:
            stages[-1].instructions.append(Instruction(op, rest.strip(), number))
    return global_args, stages


def stage_chain(stages: list[Stage], target: str) -> list[Stage]:
    """The stages a ``--target`` build runs, base first (each FROM names the previous stage or an image)."""
    by_name = {stage.name: stage for stage in stages if stage.name}
    if target not in by_name:
        raise RehearsalError(f"the Dockerfile has no stage {target!r}")
    chain = [by_name[target]]
    while chain[0].base in by_name:
        chain.insert(0, by_name[chain[0].base])
    return chain


def substitute(value: str, env: dict[str, str]) -> str:
    """``$VAR`` and ``${VAR}`` as Docker expands them in ENV/WORKDIR/COPY/USER (not in RUN: the shell does)."""
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def parse_env(args: str, env: dict[str, str]) -> dict[str, str]:
    if "=" not in args.split(" ", 1)[0]:
        key, _, value = args.partition(" ")
        return {key: substitute(value.strip(), env)}
    found = {}
    for token in shlex.split(args):
        key, _, value = token.partition("=")
        found[key] = substitute(value, {**env, **found})
    return found


def dockerignore(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    return [
        line.strip() for line in path.read_text().splitlines() if line.strip() and line[0] != "#"
    ]


def ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule for the common cases: a pattern matches the path or one of its parent folders."""
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = rel.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        bare = pattern.removeprefix("**/")
        hit = any(
            fnmatch.fnmatchcase(c, pattern)
            or (pattern.startswith("**/") and fnmatch.fnmatchcase(c.rsplit("/", 1)[-1], bare))
            for c in candidates
        )
        if hit:
            verdict = not negate
    return verdict


def copy_into(
    context: Path, sources: list[str], dest: str, root: Path, workdir: str, patterns: list[str]
) -> list[str]:
    """COPY from the build context into the root; returns the files copied (relative to the context)."""
    target = dest if dest.startswith("/") else f"{workdir.rstrip('/')}/{dest}"
    copied: list[str] = []
    into_dir = dest.endswith("/") or len(sources) > 1
    for source in sources:
        src = context / source
        if not src.exists() or ignored(source.strip("/"), patterns):
            raise RehearsalError(f"COPY {source}: not in the build context")
        if src.is_dir():
            out_dir = root / target.lstrip("/")
            for path in sorted(src.rglob("*")):
                rel = path.relative_to(context).as_posix()
                if path.is_dir() or ignored(rel, patterns):
                    continue
                out = out_dir / path.relative_to(src)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out)
                copied.append(rel)
        else:
            out = root / target.lstrip("/")
            if into_dir or out.is_dir():
                out = out / src.name
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out)
            copied.append(source)
    return copied


def final_stage_only_sets_runtime(stages: list[Stage], name: str) -> None:
    """Both targets are run from one built root, so a target stage may not change the filesystem."""
    for stage in stages:
        if stage.name == name:
            for ins in stage.instructions:
                if ins.op in {"RUN", "COPY"}:
                    raise RehearsalError(
                        f"stage {name} has {ins.op} (Dockerfile:{ins.line}); the rehearsal runs every "
                        "target from one root, so targets may only set ENV/USER/EXPOSE/CMD"
                    )
