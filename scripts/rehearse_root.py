"""The root the image rehearsal builds in: a debootstrap'ed Debian (cached as a tarball), the host's pip sources
bound into it, and ``Chroot``, which runs commands there and unmounts everything before the root is deleted.

Needs root; used by ``rehearse_image.py`` (see its docstring for the whole rehearsal).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run_checked(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` that raises on a non-zero exit (``CalledProcessError``: the rehearsal fails)."""
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
            run_checked(["debootstrap", "--variant=minbase", release, str(fresh), mirror])
            partial = tarball.with_suffix(".tar.part")
            run_checked(["tar", "-C", str(fresh), "-cf", str(partial), "."])
            partial.rename(tarball)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    run_checked(["tar", "-C", str(root), "-xf", str(tarball)])
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
            run_checked(mount)
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
