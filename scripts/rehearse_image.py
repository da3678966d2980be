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
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: a Debian slim base -> the debootstrap release that makes the same root
BASE_IMAGE = re.compile(r"^debian:(?P<release>[a-z]+)(?:-\d+)?-slim$")
DEMO_ENV = {
    "VOICEBOX_TTS_MODEL": "voicebox-demo/tiny-qwen3-tts-base",
    "VOICEBOX_STT_MODEL": "voicebox-demo/tiny-whisper",
}
IN_ROOT_VOLUME = "/rehearsal/volume"


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


# ---------------------------------------------------------------------------------------------- the root
def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run(cmd, check=True, **kwargs)


def base_root(release: str, cache: Path, mirror: str, root: Path) -> float:
    """Unpack the cached debootstrap tarball of ``release`` into ``root`` (making it first if missing)."""
    started = time.perf_counter()
    tarball = cache / f"debian-{release}-minbase.tar"
    if not tarball.exists():
        cache.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix=f"debootstrap-{release}-", dir=cache))
        try:
            print(f"rehearse: debootstrap {release} from {mirror} (cached afterwards)", flush=True)
            _run(["debootstrap", "--variant=minbase", release, str(fresh), mirror])
            partial = tarball.with_suffix(".tar.part")
            _run(["tar", "-C", str(fresh), "-cf", str(partial), "."])
            partial.rename(tarball)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    _run(["tar", "-C", str(root), "-xf", str(tarball)])
    root.chmod(
        0o755
    )  # an image's / is world-readable (the tarball's "." came from a private temp folder)
    return time.perf_counter() - started


def pip_sources() -> tuple[dict[str, str], list[str]]:
    """The host's pip index/find-links settings, and the local folders they name (bound into the root)."""
    try:
        listed = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
        ).stdout
    except OSError:
        listed = ""
    found: dict[str, str] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in {"index-url", "extra-index-url", "find-links"}:
            found["PIP_" + name.upper().replace("-", "_")] = value.strip().strip("'")
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT"):
        if os.environ.get(name):
            found[name] = os.environ[name]
    if "PIP_CERT" not in found and "cert" in listed:
        cert = re.search(r"^global\.cert='([^']+)'", listed, re.M)
        if cert:
            found["PIP_CERT"] = cert.group(1)
    dirs = []
    for key, value in found.items():
        if key == "PIP_CERT":  # the host's CA bundle (a TLS-inspecting proxy's CA included)
            found[key] = "/rehearsal/host-ca.crt"
            continue
        for item in value.split():
            path = item.removeprefix("file://")
            local = Path(path)
            if path.startswith("/") and local.exists():
                # a file:// "simple" index links to files beside it: bind the folder that holds both
                dirs.append(
                    str(local.parent if local.name == "simple" or local.is_file() else local)
                )
    return found, sorted(set(dirs))


def mounted_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    return [p for p in points if p.startswith(prefix)]


def remove_root(work: Path) -> None:
    """Delete the rehearsal folder, but never through a mount (a bound /dev or pip cache would go with it)."""
    left = mounted_under(work)
    if left:
        print(f"rehearse: not deleting {work}: still mounted: {left}", file=sys.stderr)
        return
    shutil.rmtree(work, ignore_errors=True)


class Chroot:
    """Runs commands in ``root``, inside this process's private mount namespace (see ``main``)."""

    def __init__(self, root: Path, apt_cache: Path, pip_cache: Path, bind_dirs: list[str]) -> None:
        self.root = root
        mounts = [
            ["mount", "-t", "proc", "proc", str(root / "proc")],
            ["mount", "--rbind", "/dev", str(root / "dev")],
            ["mount", "-t", "tmpfs", "tmpfs", str(root / "dev/shm")],
        ]
        binds = [(str(apt_cache), "/var/cache/apt/archives"), (str(pip_cache), "/rehearsal/pip")]
        binds += [(d, d) for d in bind_dirs]
        for src, dst in binds:
            Path(src).mkdir(parents=True, exist_ok=True)
            (root / dst.lstrip("/")).mkdir(parents=True, exist_ok=True)
            mounts.append(["mount", "--bind", src, str(root / dst.lstrip("/"))])
        self.mount_points: list[str] = []
        for mount in mounts:
            _run(mount)
            self.mount_points.append(mount[-1])
        shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")
        host_ca = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"
        if Path(host_ca).is_file():
            shutil.copy2(host_ca, root / "rehearsal/host-ca.crt")

    def home_of(self, user: str) -> str:
        for line in (self.root / "etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 5 and user in (fields[0], fields[2]):
                return fields[5]
        return "/"

    def close(self) -> None:
        """Unmount everything (binds of host folders included) before anything deletes the root."""
        for point in reversed(self.mount_points):
            subprocess.run(["umount", "-R", point], capture_output=True)
            subprocess.run(["umount", "-R", "-l", point], capture_output=True)
        self.mount_points = []

    def command(
        self, script: str, env: dict[str, str], workdir: str, user: str | None = None
    ) -> list[str]:
        base = ["chroot"]
        if user and user not in {"0", "root"}:
            base.append(f"--userspec={user}:{user}")
            env = {**env, "HOME": self.home_of(user)}
        env_args = [f"{k}={v}" for k, v in env.items()]
        inner = f"cd {shlex.quote(workdir)} && {script}"
        return [*base, str(self.root), "/usr/bin/env", "-i", *env_args, "/bin/sh", "-c", inner]


# ---------------------------------------------------------------------------------------------- the build
@dataclass
class Built:
    env: dict[str, str]
    workdir: str
    user: str | None
    cmd: list[str]
    steps: list[tuple[str, float]]


def build(
    chroot: Chroot,
    chain: list[Stage],
    global_args: dict[str, str],
    build_args: dict[str, str],
    rehearsal_env: dict[str, str],
    drop_env: set[str],
) -> Built:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
    args = dict(global_args)
    workdir, user, cmd = "/", None, []
    steps: list[tuple[str, float]] = []
    patterns = dockerignore(ROOT)
    first = chain[0].base
    match = BASE_IMAGE.match(substitute(first, args))
    if match is None:
        raise RehearsalError(
            f"FROM {first}: the rehearsal needs a Debian slim base (debian:<release>-slim)"
        )
    for stage in chain:
        for ins in stage.instructions:
            started = time.perf_counter()
            label = f"Dockerfile:{ins.line} {ins.op} {ins.args[:70]}"
            if ins.op == "ARG":
                key, _, default = ins.args.partition("=")
                args[key] = build_args.get(key, default)
            elif ins.op == "ENV":
                env.update(parse_env(ins.args, {**args, **env}))
            elif ins.op == "WORKDIR":
                workdir = substitute(ins.args, {**args, **env})
                (chroot.root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
            elif ins.op == "COPY":
                if ins.args.startswith("--"):
                    raise RehearsalError(f"{label}: COPY options are not rehearsed")
                *sources, dest = shlex.split(substitute(ins.args, {**args, **env}))
                copy_into(ROOT, sources, dest, chroot.root, workdir, patterns)
            elif ins.op == "RUN":
                run_env = {**env, **{k: v for k, v in args.items()}, **rehearsal_env}
                for key in drop_env:
                    run_env.pop(key, None)
                print(f"rehearse: {label}", flush=True)
                result = subprocess.run(chroot.command(ins.args, run_env, workdir, user))
                if result.returncode != 0:
                    raise RehearsalError(f"{label} failed with exit code {result.returncode}")
            elif ins.op == "USER":
                user = substitute(ins.args, {**args, **env})
            elif ins.op == "CMD":
                cmd = json.loads(ins.args)
            elif ins.op in {"EXPOSE", "LABEL"}:
                pass
            else:
                raise RehearsalError(f"{label}: {ins.op} is not rehearsed")
            if ins.op in {"RUN", "COPY"}:
                steps.append((label, time.perf_counter() - started))
    if not cmd:
        raise RehearsalError(f"stage {chain[-1].name}: no CMD")
    return Built(env=env, workdir=workdir, user=user, cmd=cmd, steps=steps)


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
        _run(chroot.command("voicebox-worker models install-demo", demo_env, serverless.workdir))
        timings["install_demo_s"] = time.perf_counter() - started
        test_input = json.dumps(json.loads((ROOT / "test_input.json").read_text()))
        cold = run_serverless(chroot, serverless, test_input, args.timeout)
        _run(["chown", "-R", f"{pod.user or 0}", str(volume)])
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
