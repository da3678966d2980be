"""Import ``qwen_tts`` without its import-time side effects, so a worker start logs only what matters.

Why: ``import qwen_tts`` imports its 25 Hz tokenizer, which this worker never loads (it serves the 12 Hz
models), and that module at import time
- imports ``onnxruntime``, a native runtime with its own startup work (and, in some builds, telemetry), so a
  worker start must not pay for it or risk a network attempt;
- imports ``sox``, which runs ``sox -h`` in a shell: "sox: not found" plus a SoX banner where the binary is
  absent (the image does not install it), the whole help text where it is present;
- prints a flash-attn warning block to stdout;
and its config classes log one "X_config is None. Initializing ... with default values" line per config object
(~15 per model load). Each is turned into nothing or into one line that says whether it matters.

``onnxruntime`` and ``sox`` are replaced by lazy modules that import the real one on first use (only the 25 Hz
tokenizer would use them), so nothing is lost; anything else printed during the import passes through unchanged.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import re
import sys
import types
from collections.abc import Iterator
from typing import Any

__all__ = [
    "DEFERRED_MODULES",
    "defer_unused_imports",
    "quiet_third_party_import",
    "skip_sklearn_in_transformers",
]

log = logging.getLogger(__name__)

#: imported by qwen_tts's 25 Hz tokenizer only; loaded for real on first attribute access
DEFERRED_MODULES = ("onnxruntime", "sox")
_FLASH_ATTN = re.compile(r"\n?\*+\nWarning: flash-attn is not installed\.[^\n]*\n\*+\n ?\n?")


class _DeferredModule(types.ModuleType):
    """Stands in ``sys.modules`` for a module until something reads one of its attributes."""

    def __getattr__(self, attr: str) -> object:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        try:
            real = importlib.import_module(name)
        except BaseException:
            sys.modules.setdefault(name, self)
            raise
        return getattr(real, attr)


def defer_unused_imports() -> list[str]:
    """Register lazy stand-ins for :data:`DEFERRED_MODULES` not imported yet; return the names registered."""
    registered = []
    for name in DEFERRED_MODULES:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue  # not installed: qwen_tts's own import error will say so
        module = _DeferredModule(name)
        module.__spec__ = (
            spec  # importlib.util.find_spec(name) must keep answering (transformers asks)
        )
        module.__file__ = spec.origin
        sys.modules[name] = module
        registered.append(name)
    return registered


def skip_sklearn_in_transformers() -> None:
    """Tell transformers scikit-learn is absent: it imports ``sklearn.metrics`` at import time (~1.7 s of a
    loaded 2-core start) for the confidence threshold of *assisted* generation, which Qwen3-TTS never uses.

    ``_sklearn_available`` is private to transformers; the lock pins the version this was checked on
    (tests/test_no_network.py fails if sklearn comes back into a worker start).
    """
    from transformers.utils import import_utils

    if hasattr(import_utils, "_sklearn_available"):
        import_utils._sklearn_available = False


@contextlib.contextmanager
def quiet_third_party_import() -> Iterator[None]:
    """Around ``import qwen_tts``: defer the unused modules, drop the config chatter, condense the prints."""
    defer_unused_imports()
    if "transformers.generation" not in sys.modules:
        skip_sklearn_in_transformers()
    qwen_log = logging.getLogger("qwen_tts")
    if qwen_log.level == logging.NOTSET:
        qwen_log.setLevel(logging.WARNING)  # its INFO lines are only the "config is None" defaults
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            yield
    finally:
        text, found = _FLASH_ATTN.subn("", captured.getvalue())
        if found:
            log.info(
                "flash-attn not installed: harmless here (only Qwen's 25 Hz tokenizer would use it; "
                "the 12 Hz models use PyTorch attention)"
            )
        if text.strip():
            sys.stdout.write(text)


def import_qwen_tts() -> Any:
    """Import ``qwen_tts`` with an error that says what is wrong when its torchaudio import fails."""
    from backend.engines.base import EngineError
    from backend.engines.torchaudio_compat import ensure_kaldi_importable

    ensure_kaldi_importable()
    try:
        with quiet_third_party_import():
            import qwen_tts
    except (ImportError, OSError) as exc:
        hint = ""
        if "torchaudio" in str(exc):
            hint = (
                " qwen_tts imports torchaudio.compliance.kaldi; install a torchaudio build that matches "
                "the installed torch (the CUDA image pins a matched pair)."
            )
        raise EngineError(f"cannot import qwen_tts: {type(exc).__name__}: {exc}.{hint}") from exc
    return qwen_tts
