"""voicebox-worker: a Voicebox-compatible TTS server on a RunPod network volume.

Importing this package has no side effects: no disk writes, no network, no torch. ``__version__`` is read from
the installed package's metadata, whose one source is ``version`` in pyproject.toml (/health, bundles and the
CLI all report it; docs/release.md).
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("voicebox-worker")
except _metadata.PackageNotFoundError:  # a source tree that was never installed (pip install -e .)
    __version__ = "0+unknown"
