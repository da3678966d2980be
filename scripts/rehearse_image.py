"""Rehearse the Docker image without Docker: perform the Dockerfile's steps in a debootstrap'ed Debian root.

    sudo scripts/rehearse-image.sh                 # what CI runs (scripts/test.sh)
    sudo scripts/rehearse-image.sh --keep          # keep the root afterwards, to look around (path printed)

Why: no Docker engine runs in CI, yet the image is what production runs. This interprets the Dockerfile itself
(FROM/ARG/ENV/WORKDIR/COPY/RUN/USER/CMD; .dockerignore honoured) in a fresh root of the same Debian release as
the base image, so a missing system package (apt), a pip resolution change (scripts/lockcheck.py in the
install step), a wrong entry point (the targets' CMDs are run) or a file the image forgets to copy (only what
COPY copies is there) fails here as it would fail in the image. Then it runs
- the serverless target's CMD with ``--test_input`` from test_input.json, against a throwaway volume with the
  demo models, in a network namespace with only loopback (no network at start), and
- the pod target's CMD (``voicebox-worker serve``) as its USER, and asks it GET /health.

Deviations from a ``docker build``, all deliberate: torch is the CPU build (TORCH_CUDA=cpu; no GPU here); pip
uses the host's package sources and cache (PIP_NO_CACHE_DIR is dropped); apt's downloaded .debs are cached
between runs; the volume and demo models are a throwaway directory, not /runpod-volume. The debootstrap'ed base
is cached as a tarball (VOICEBOX_REHEARSAL_CACHE, default ~/.cache/voicebox-worker/rehearsal) so later runs on
the same machine skip it. Needs root, debootstrap, unshare and ip (util-linux, iproute2).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rehearse_dockerfile import (
    BASE_IMAGE,
    Instruction,
    RehearsalError,
    Stage,
    copy_into,
    dockerignore,
    final_stage_only_sets_runtime,
    parse_dockerfile,
    parse_env,
    stage_chain,
    substitute,
)
from rehearse_root import Chroot, base_root, pip_sources, remove_root, run_checked

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEMO_ENV = {
    "VOICEBOX_TTS_MODEL": "voicebox-demo/tiny-qwen3-tts-base",
    "VOICEBOX_STT_MODEL": "voicebox-demo/tiny-whisper",
}
IN_ROOT_VOLUME = "/rehearsal/volume"


# ---------------------------------------------------------------------------------------------- the build
@dataclass
class Built:
    env: dict[str, str]
    workdir: str
    user: str | None
    cmd: list[str]
    steps: list[tuple[str, float]]


@dataclass
class _Building:
    """What the instructions so far have set, as Docker's builder tracks it through the stages."""

    chroot: Chroot
    args: dict[str, str]
    build_args: dict[str, str]
    rehearsal_env: dict[str, str]
    drop_env: set[str]
    patterns: list[str]
    env: dict[str, str] = field(
        default_factory=lambda: {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
        }
    )
    workdir: str = "/"
    user: str | None = None
    cmd: list[str] = field(default_factory=list)

    def expand(self, value: str) -> str:
        return substitute(value, {**self.args, **self.env})

    def run(self, ins: Instruction, label: str) -> None:
        """RUN in the root, with the build's ARGs and ENV and the rehearsal's own pip settings."""
        run_env = {**self.env, **self.args, **self.rehearsal_env}
        for key in self.drop_env:
            run_env.pop(key, None)
        print(f"rehearse: {label}", flush=True)
        result = subprocess.run(self.chroot.command(ins.args, run_env, self.workdir, self.user))
        if result.returncode != 0:
            raise RehearsalError(f"{label} failed with exit code {result.returncode}")

    def apply(self, ins: Instruction, label: str) -> None:
        """One instruction, as ``docker build`` performs it."""
        if ins.op == "ARG":
            key, _, default = ins.args.partition("=")
            self.args[key] = self.build_args.get(key, default)
        elif ins.op == "ENV":
            self.env.update(parse_env(ins.args, {**self.args, **self.env}))
        elif ins.op == "WORKDIR":
            self.workdir = self.expand(ins.args)
            (self.chroot.root / self.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif ins.op == "COPY":
            if ins.args.startswith("--"):
                raise RehearsalError(f"{label}: COPY options are not rehearsed")
            *sources, dest = shlex.split(self.expand(ins.args))
            copy_into(ROOT, sources, dest, self.chroot.root, self.workdir, self.patterns)
        elif ins.op == "RUN":
            self.run(ins, label)
        elif ins.op == "USER":
            self.user = self.expand(ins.args)
        elif ins.op == "CMD":
            self.cmd = json.loads(ins.args)
        elif ins.op not in {"EXPOSE", "LABEL"}:
            raise RehearsalError(f"{label}: {ins.op} is not rehearsed")


def build(
    chroot: Chroot,
    chain: list[Stage],
    global_args: dict[str, str],
    build_args: dict[str, str],
    rehearsal_env: dict[str, str],
    drop_env: set[str],
) -> Built:
    state = _Building(
        chroot, dict(global_args), build_args, rehearsal_env, drop_env, dockerignore(ROOT)
    )
    first = chain[0].base
    if BASE_IMAGE.match(substitute(first, state.args)) is None:
        raise RehearsalError(
            f"FROM {first}: the rehearsal needs a Debian slim base (debian:<release>-slim)"
        )
    steps: list[tuple[str, float]] = []
    for stage in chain:
        for ins in stage.instructions:
            started = time.perf_counter()
            label = f"Dockerfile:{ins.line} {ins.op} {ins.args[:70]}"
            state.apply(ins, label)
            if ins.op in {"RUN", "COPY"}:
                steps.append((label, time.perf_counter() - started))
    if not state.cmd:
        raise RehearsalError(f"stage {chain[-1].name}: no CMD")
    return Built(env=state.env, workdir=state.workdir, user=state.user, cmd=state.cmd, steps=steps)


def in_netns(command: list[str]) -> list[str]:
    """Run ``command`` in a new network namespace with only loopback up: no route off this machine."""
    script = "ip link set lo up && exec " + " ".join(shlex.quote(c) for c in command)
    return ["unshare", "--net", "--fork", "sh", "-c", script]


def run_serverless(chroot: Chroot, built: Built, test_input: str, timeout: float) -> dict:
    env = {
        **built.env,
        "VOICEBOX_VOLUME": IN_ROOT_VOLUME,
        "HF_HOME": f"{IN_ROOT_VOLUME}/huggingface",
    }
    env.update(DEMO_ENV)
    script = " ".join(shlex.quote(c) for c in [*built.cmd, "--test_input", test_input])
    started = time.perf_counter()
    result = subprocess.run(
        in_netns(chroot.command(script, env, built.workdir, built.user)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    elapsed = time.perf_counter() - started
    output = result.stdout + result.stderr
    sys.stdout.write(output)
    if result.returncode != 0 or "Job result" not in output:
        raise RehearsalError(
            f"serverless CMD {built.cmd} --test_input failed ({result.returncode})"
        )
    if "'status_code': 200" not in output:
        raise RehearsalError("serverless --test_input did not answer 200")
    cold = next(
        (
            json.loads(line)
            for line in output.splitlines()
            if line.startswith('{"event": "cold_start"')
        ),
        None,
    )
    if cold is None:
        raise RehearsalError("serverless run printed no cold_start line")
    cold["wall_s"] = round(elapsed, 3)
    return cold


POD_PROBE = """
import json, sys, time, urllib.request
deadline = time.time() + {timeout}
while True:
    try:
        body = json.load(urllib.request.urlopen("http://127.0.0.1:{port}/health", timeout=5))
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("pod: no answer on /health")
        time.sleep(0.5)
print("pod health:", json.dumps(body))
sys.exit(0 if body.get("status") == "healthy" else "pod: not healthy")
"""


def run_pod(chroot: Chroot, built: Built, timeout: float) -> float:
    port = built.cmd[built.cmd.index("--port") + 1] if "--port" in built.cmd else "17493"
    env = {
        **built.env,
        "VOICEBOX_VOLUME": IN_ROOT_VOLUME,
        "HF_HOME": f"{IN_ROOT_VOLUME}/huggingface",
    }
    env.update(DEMO_ENV)
    serve = " ".join(shlex.quote(c) for c in built.cmd)
    probe = POD_PROBE.format(timeout=timeout, port=port)
    both = (
        f"({serve}) & server=$!; python -c {shlex.quote(probe)}; status=$?; "
        "kill $server; wait $server; exit $status"
    )
    started = time.perf_counter()
    result = subprocess.run(
        in_netns(chroot.command(both, env, built.workdir, built.user)), timeout=timeout + 30
    )
    if result.returncode != 0:
        raise RehearsalError(f"pod CMD {built.cmd} did not answer a healthy /health")
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------------- main
def rehearse(args: argparse.Namespace) -> dict:
    text = (ROOT / args.dockerfile).read_text()
    global_args, stages = parse_dockerfile(text)
    for target in ("serverless", "pod"):
        final_stage_only_sets_runtime(stages, target)
    release = BASE_IMAGE.match(stage_chain(stages, "serverless")[0].base)
    if release is None:
        raise RehearsalError("the base image is not debian:<release>-slim")
    cache = Path(args.cache)
    work = Path(tempfile.mkdtemp(prefix="voicebox-rehearsal-"))
    root = work / "root"
    timings: dict[str, float] = {}
    chroot: Chroot | None = None
    try:
        timings["base_root_s"] = base_root(release.group("release"), cache, args.mirror, root)
        sources, bind_dirs = pip_sources()
        chroot = Chroot(root, cache / "apt-archives", cache / "pip", bind_dirs)
        torch_index = "" if any("wheels" in d for d in bind_dirs) else args.cpu_torch_index
        rehearsal_env = {"PIP_CACHE_DIR": "/rehearsal/pip", **sources}
        build_args = {"TORCH_CUDA": "cpu", "TORCH_INDEX": torch_index}
        started = time.perf_counter()
        serverless = build(
            chroot,
            stage_chain(stages, "serverless"),
            global_args,
            build_args,
            rehearsal_env,
            {"PIP_NO_CACHE_DIR"},
        )
        timings["build_s"] = time.perf_counter() - started
        pod_chain = [s for s in stages if s.name == "pod"]
        pod = Built(**{**serverless.__dict__})
        for ins in pod_chain[0].instructions:
            if ins.op == "ENV":
                pod.env = {**pod.env, **parse_env(ins.args, pod.env)}
            elif ins.op == "USER":
                pod.user = ins.args
            elif ins.op == "CMD":
                pod.cmd = json.loads(ins.args)
        # the throwaway volume with the demo models, made by the image's own CLI
        volume = root / IN_ROOT_VOLUME.lstrip("/")
        volume.mkdir(parents=True)
        demo_env = {**serverless.env, "VOICEBOX_VOLUME": IN_ROOT_VOLUME}
        started = time.perf_counter()
        run_checked(
            chroot.command("voicebox-worker models install-demo", demo_env, serverless.workdir)
        )
        timings["install_demo_s"] = time.perf_counter() - started
        test_input = json.dumps(json.loads((ROOT / "test_input.json").read_text()))
        cold = run_serverless(chroot, serverless, test_input, args.timeout)
        run_checked(["chown", "-R", f"{pod.user or 0}", str(volume)])
        timings["pod_s"] = run_pod(chroot, pod, args.timeout)
        report = {
            "event": "rehearsal",
            "release": release.group("release"),
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
            "steps_s": {label: round(s, 1) for label, s in serverless.steps},
            "cold_start": cold,
        }
        if args.keep:
            report["root"] = str(root)
        return report
    finally:
        if not args.keep:
            if chroot is not None:
                chroot.close()
            remove_root(work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dockerfile", default="Dockerfile")
    parser.add_argument("--mirror", default=os.environ.get("DEBIAN_MIRROR", DEFAULT_MIRROR))
    parser.add_argument(
        "--cache",
        default=os.environ.get(
            "VOICEBOX_REHEARSAL_CACHE",
            str(Path.home() / ".cache" / "voicebox-worker" / "rehearsal"),
        ),
    )
    parser.add_argument("--cpu-torch-index", default="https://download.pytorch.org/whl/cpu")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run of a CMD")
    parser.add_argument("--keep", action="store_true", help="keep the root (and its mounts)")
    parser.add_argument("--report", help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("rehearse: needs root (debootstrap, chroot, mounts)", file=sys.stderr)
        return 2
    if os.environ.get("VOICEBOX_REHEARSAL_NS") != "1":
        # a private mount namespace: every mount made below disappears with this process
        os.environ["VOICEBOX_REHEARSAL_NS"] = "1"
        flags = ["--mount", "--propagation", "private"]
        os.execvp("unshare", ["unshare", *flags, sys.executable, __file__, *sys.argv[1:]])
    started = time.perf_counter()
    try:
        report = rehearse(args)
    except (RehearsalError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        print(f"rehearse: FAILED: {err}", file=sys.stderr)
        return 1
    report["total_s"] = round(time.perf_counter() - started, 1)
    line = json.dumps(report)
    print(line, flush=True)
    if args.report:
        Path(args.report).write_text(line + "\n")
    print(f"rehearse: OK in {report['total_s']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
