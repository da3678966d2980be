"""Test-only stand-in for ``torchaudio.compliance.kaldi``.

Why: PyPI's torchaudio wheel is a CUDA build that cannot load beside the CPU torch used in CI (and this venv has
none at all), yet ``import qwen_tts`` imports ``torchaudio.compliance.kaldi`` for its 25 Hz tokenizer, which the
12 Hz models never call. Installed into ``sys.modules`` by a fixture only when the real import fails; never used by
product code.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types


def install() -> bool:
    """Register the stub unless a working torchaudio is importable; return True when the stub is in use."""
    if "torchaudio" in sys.modules:
        return getattr(sys.modules["torchaudio"], "__version__", "") == "0.0-stub"
    try:
        import torchaudio.compliance.kaldi  # noqa: F401
    except Exception:  # noqa: BLE001 - an OSError from a CUDA build is as fatal as a missing package
        for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
            del sys.modules[name]
    else:
        return False
    ta = types.ModuleType("torchaudio")
    comp = types.ModuleType("torchaudio.compliance")
    kaldi = types.ModuleType("torchaudio.compliance.kaldi")

    def _unavailable(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(
            "torchaudio stub: kaldi.fbank unavailable (only the 25 Hz tokenizer needs it)"
        )

    kaldi.fbank = _unavailable  # type: ignore[attr-defined]
    ta.compliance = comp  # type: ignore[attr-defined]
    comp.kaldi = kaldi  # type: ignore[attr-defined]
    ta.__version__ = "0.0-stub"  # type: ignore[attr-defined]
    for mod in (ta, comp, kaldi):
        # transformers calls importlib.util.find_spec on it: a spec must exist
        mod.__spec__ = importlib.machinery.ModuleSpec(mod.__name__, None)
    sys.modules.update(
        {"torchaudio": ta, "torchaudio.compliance": comp, "torchaudio.compliance.kaldi": kaldi}
    )
    return True
