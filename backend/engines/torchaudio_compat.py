"""Let ``qwen_tts`` import where no torchaudio matching torch is installed (CPU laptops, CI).

Why: ``import qwen_tts`` imports ``torchaudio.compliance.kaldi`` for its 25 Hz tokenizer only; the 12 Hz models
this worker serves never call it. PyPI's torchaudio is a CUDA build that cannot load beside a CPU torch, so on a
CPU machine the whole package would fail to import for a function it never uses. When (and only when) the real
import fails, a module is registered whose functions raise a clear error if anything does call them. The Docker
image installs a matching torch/torchaudio pair, so there the real module is used.
"""

from __future__ import annotations

import importlib.machinery
import logging
import sys
import types
from typing import Any

log = logging.getLogger(__name__)
MARKER = "voicebox-worker-compat"


class TorchaudioUnavailableError(RuntimeError):
    """The 25 Hz tokenizer was called on a machine without a torchaudio that matches torch."""


def _unavailable(*_args: object, **_kwargs: object) -> None:
    raise TorchaudioUnavailableError(
        "torchaudio.compliance.kaldi is not available on this machine (no torchaudio build matching "
        "the installed torch); only Qwen's 25 Hz tokenizer needs it — use a 12 Hz model or install a "
        "matching torchaudio"
    )


def ensure_kaldi_importable() -> bool:
    """Return True when a stand-in was registered; False when a real torchaudio imports."""
    existing = sys.modules.get("torchaudio")
    if existing is not None:
        return getattr(existing, "__voicebox__", "") == MARKER or hasattr(existing, "compliance")
    try:
        import torchaudio.compliance.kaldi  # noqa: F401
    except Exception as exc:  # an OSError from a mismatched CUDA build is as fatal as a missing one
        for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
            del sys.modules[name]
        log.info(
            "torchaudio unavailable (%s): harmless here (only Qwen's 25 Hz tokenizer needs it; a stand-in "
            "that raises a clear error is registered)",
            exc,
        )
    else:
        return False
    # typed Any: stand-in modules get their attributes set here, which ModuleType does not declare
    package: Any = types.ModuleType("torchaudio")
    compliance: Any = types.ModuleType("torchaudio.compliance")
    kaldi: Any = types.ModuleType("torchaudio.compliance.kaldi")
    kaldi.fbank = _unavailable
    kaldi.mfcc = _unavailable
    package.compliance = compliance
    compliance.kaldi = kaldi
    package.__voicebox__ = MARKER
    for module in (package, compliance, kaldi):
        module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, loader=None)
        sys.modules[module.__name__] = module
    return True
