"""Check the running Python environment against requirements.lock (stdlib only: runs in the image too).

    python scripts/lockcheck.py --extras server --torch-cuda 13.0   # after scripts/install-deps.sh
    python scripts/lockcheck.py --no-deps-names                     # the packages installed --no-deps

Why: pip installs with the lock as constraints, which pins every package the lock names but lets through a
package the lock does not know (a new transitive dependency: a pip resolution change). This check fails on
that, on any version that differs from the lock, and on a torch build other than the one asked for. The only
packages allowed outside the lock are the CUDA runtime that torch's CUDA build brings (nvidia-*, cuda-*,
triton), and only when a CUDA build was asked for.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PROJECT = "voicebox-worker"
#: what torch's CUDA wheels add; never needed (nor allowed) with a CPU build
CUDA_RUNTIME = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
#: the client extra must stay free of these (docs/client.md promises it)
HEAVY = ("torch", "transformers", "numpy")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise SystemExit(f"lockcheck: {path.name}: not an exact pin: {raw!r}")
        pins[normalize(name)] = version.strip()
    return pins


def lock_python(path: Path = LOCK) -> str:
    """The ``major.minor`` the lock was made with (its ``# python X.Y`` header line)."""
    found = re.search(r"^# python (\d+\.\d+)$", path.read_text(), re.M)
    if found is None:
        raise SystemExit(f"lockcheck: {path.name} has no '# python X.Y' line (run scripts/lock.sh)")
    return found.group(1)


def no_deps_specs(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    data = tomllib.loads(pyproject.read_text())
    return list(data.get("tool", {}).get(PROJECT, {}).get("install-no-deps", []))


def installed() -> dict[str, str]:
    return {normalize(d.metadata["Name"]): d.version for d in metadata.distributions()}


def torch_cuda() -> str | None:
    """The CUDA release torch was built for, read from ``torch/version.py`` (no import: no GPU needed)."""
    try:
        files = metadata.files("torch") or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file).replace("\\", "/") == "torch/version.py":
            found = re.search(r"^cuda(?::[^=]*)?\s*=\s*'([^']*)'", file.read_text(), re.M)
            return found.group(1) if found else None
    return None


def problems(
    pins: dict[str, str], have: dict[str, str], *, extras: str, cuda: str, cuda_built: str | None
) -> list[str]:
    found: list[str] = []
    version_python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if version_python != lock_python():
        found.append(f"Python {version_python}, but the lock was made for {lock_python()}")
    for name, version in sorted(have.items()):
        if name == PROJECT:
            continue
        if name not in pins:
            if cuda != "cpu" and CUDA_RUNTIME.match(name):
                continue
            found.append(f"{name}=={version} is installed but not in requirements.lock")
        elif version.split("+", 1)[0] != pins[name]:
            found.append(f"{name}=={version} is installed; requirements.lock says {pins[name]}")
    if extras == "client":
        found += [f"the client extra installed {name}" for name in HEAVY if name in have]
    elif "torch" in have:
        if cuda == "cpu" and cuda_built is not None:
            found.append(f"torch is a CUDA {cuda_built} build; a CPU build was asked for")
        if cuda != "cpu" and cuda_built != cuda:
            found.append(f"torch is built for CUDA {cuda_built}; the image declares {cuda}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="dev", choices=["client", "server", "dev"])
    parser.add_argument("--torch-cuda", default="cpu", help="cpu, or the CUDA release, e.g. 13.0")
    parser.add_argument("--no-deps-names", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.no_deps_names:
        print("\n".join(re.split(r"[=<>!~ ;\[]", spec, maxsplit=1)[0] for spec in no_deps_specs()))
        return 0
    found = problems(
        read_lock(), installed(), extras=args.extras, cuda=args.torch_cuda, cuda_built=torch_cuda()
    )
    for line in found:
        print(f"lockcheck: {line}", file=sys.stderr)
    if found:
        print(
            "lockcheck: the environment differs from requirements.lock (see docs/release.md)",
            file=sys.stderr,
        )
        return 1
    print(f"lockcheck: {len(installed())} packages match requirements.lock", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
